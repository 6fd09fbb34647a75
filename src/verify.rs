//! `segrelay verify`: what the destination should hold after a send of this
//! input, against what it says it holds.
//!
//! Amberflo: per meter, customer and UTC day, the sum of the meter values,
//! against its usage query. Orb: every idempotency key, looked up with its
//! event search. Kable documents no way to read events back.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{IsTerminal, Write};

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::VerifyConfig;
use crate::console::{Console, Verbosity};
use crate::delivery::throttle::Throttle;
use crate::delivery::{Call, Courier, Delivered};
use crate::destination::{Kind, Request, Stream};
use crate::run::pipeline;
use crate::status::Status;
use crate::transport::Transport;
use crate::transport::http::HttpSender;

/// Customers per Amberflo usage query, and keys per Orb search (Orb's limit).
const CUSTOMERS_PER_QUERY: usize = 50;
const KEYS_PER_SEARCH: usize = 500;
const DAY: i64 = 86_400;

/// One (customer, meter, day) total that differs.
#[derive(Debug, Serialize)]
struct UsageDifference {
    customer: String,
    meter: String,
    day: String,
    expected: f64,
    found: f64,
    difference: f64,
}

/// An Orb event the destination does not have.
#[derive(Debug, Serialize)]
struct MissingEvent {
    idempotency_key: String,
    external_customer_id: String,
    event_name: String,
    timestamp: String,
    source: String,
    line: u64,
}

pub(crate) fn run(config: VerifyConfig) -> anyhow::Result<Status> {
    let destination = config.target.destination.clone();
    let kind = destination.kind();
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
    let comparison = match kind {
        Kind::Amberflo => {
            let api = destination.amberflo_api().expect("an Amberflo destination");
            compare_amberflo(&config, &courier, &mut transport, &|query| {
                api.usage(&query)
            })?
        }
        Kind::Orb => {
            let api = destination.orb_api().expect("an Orb destination");
            compare_orb(&config, &courier, &mut transport, &|query| {
                api.search(&query)
            })?
        }
        Kind::Kable => unreachable!("VerifyConfig refuses Kable"),
    };
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

type Make<'a> = dyn Fn(Value) -> Request + 'a;

/// What a comparison found: the differences, as a table and as JSON.
struct Comparison {
    columns: &'static [&'static str],
    rows: Vec<Vec<String>>,
    json: Value,
    checked: usize,
    notes: Vec<String>,
}

impl Comparison {
    fn stopped() -> Comparison {
        Comparison {
            columns: &[],
            rows: Vec::new(),
            json: Value::Array(Vec::new()),
            checked: 0,
            notes: Vec::new(),
        }
    }
}

/// Sends a query with the courier's retries; the answer's JSON, or None after an abort.
fn ask(
    courier: &Courier,
    transport: &mut dyn Transport,
    request: &Request,
) -> anyhow::Result<Option<Value>> {
    let mut delivered = Delivered::default();
    match courier.call(transport, request, &mut delivered)? {
        Call::Answered(response) => match serde_json::from_slice(&response.body) {
            Ok(value) => Ok(Some(value)),
            Err(e) => {
                courier.abort(&format!(
                    "{} answered with something that is not JSON ({e})",
                    request.url
                ));
                Ok(None)
            }
        },
        Call::Refused { message, .. } => {
            courier.abort(&format!("{} refused the query: {message}", request.url));
            Ok(None)
        }
        Call::Written | Call::Stopped(_) => Ok(None),
    }
}

fn compare_amberflo(
    config: &VerifyConfig,
    courier: &Courier,
    transport: &mut dyn Transport,
    make: &Make,
) -> anyhow::Result<Comparison> {
    // (meter, customer, day) -> sum; Amberflo drops a record it already has.
    let mut expected: BTreeMap<(String, String, i64), f64> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut oldest: Option<i64> = None;
    let destination = config.target.destination.as_ref();
    pipeline::scan(&config.options, destination, |_, payload| {
        if payload.stream != Stream::Usage || !seen.insert(payload.key.clone()) {
            return;
        }
        let Ok(record) = serde_json::from_str::<Value>(&payload.json) else {
            return;
        };
        let millis = record["meterTimeInMillis"].as_i64().unwrap_or_default();
        let key = (
            record["meterApiName"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            record["customerId"].as_str().unwrap_or_default().to_owned(),
            (millis / 1000).div_euclid(DAY),
        );
        *expected.entry(key).or_default() += record["meterValue"].as_f64().unwrap_or_default();
        oldest = Some(oldest.map_or(millis, |o| o.min(millis)));
    })?;
    let mut notes = Vec::new();
    if oldest.is_some_and(|o| o < Timestamp::now().as_millisecond() - DAY * 1000) {
        notes.push(
            "the input holds records older than 24 hours, which Amberflo may take up to 24 hours to show in usage: \
             a difference now may only be that delay"
                .to_owned(),
        );
    }
    let meters: BTreeMap<&str, BTreeSet<&str>> =
        expected
            .keys()
            .fold(BTreeMap::new(), |mut meters, (meter, customer, _)| {
                meters
                    .entry(meter.as_str())
                    .or_default()
                    .insert(customer.as_str());
                meters
            });
    let first_day = expected.keys().map(|k| k.2).min().unwrap_or(0);
    let last_day = expected.keys().map(|k| k.2).max().unwrap_or(0);
    let queries: usize = meters
        .values()
        .map(|c| c.len().div_ceil(CUSTOMERS_PER_QUERY))
        .sum();
    let bar = progress(config, queries as u64, "usage queries");
    let mut found: BTreeMap<(String, String, i64), f64> = BTreeMap::new();
    for (meter, customers) in &meters {
        let customers: Vec<&str> = customers.iter().copied().collect();
        for chunk in customers.chunks(CUSTOMERS_PER_QUERY) {
            let body = json!({
                "meterApiName": meter,
                "aggregation": "SUM",
                "timeGroupingInterval": "DAY",
                "timeRange": {"startTimeInSeconds": first_day * DAY, "endTimeInSeconds": (last_day + 1) * DAY},
                "groupBy": ["customerId"],
                "filter": {"customerId": chunk},
            });
            let Some(answer) = ask(courier, transport, &make(body))? else {
                return Ok(Comparison::stopped());
            };
            for group in answer["clientMeters"].as_array().into_iter().flatten() {
                let customer = group["group"]["groupInfo"]["customerId"]
                    .as_str()
                    .unwrap_or_default();
                for value in group["values"].as_array().into_iter().flatten() {
                    let day = value["secondsSinceEpochUtc"]
                        .as_i64()
                        .unwrap_or_default()
                        .div_euclid(DAY);
                    let amount = value["value"].as_f64().unwrap_or_default();
                    if amount != 0.0 {
                        *found
                            .entry(((*meter).to_owned(), customer.to_owned(), day))
                            .or_default() += amount;
                    }
                }
            }
            if let Some(bar) = &bar {
                bar.inc(1);
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let keys: BTreeSet<&(String, String, i64)> = expected.keys().chain(found.keys()).collect();
    let mut differences = Vec::new();
    for key in &keys {
        let want = expected.get(key).copied().unwrap_or(0.0);
        let got = found.get(key).copied().unwrap_or(0.0);
        if (want - got).abs() > 1e-9 * want.abs().max(1.0) {
            let (meter, customer, day) = key;
            differences.push(UsageDifference {
                customer: customer.clone(),
                meter: meter.clone(),
                day: day_text(*day),
                expected: want,
                found: got,
                difference: got - want,
            });
        }
    }
    let rows = differences
        .iter()
        .map(|d| {
            vec![
                d.customer.clone(),
                d.meter.clone(),
                d.day.clone(),
                number(d.expected),
                number(d.found),
                number(d.difference),
            ]
        })
        .collect();
    Ok(Comparison {
        columns: &[
            "customer",
            "meter",
            "day",
            "expected",
            "found",
            "difference",
        ],
        rows,
        json: serde_json::to_value(differences)?,
        checked: keys.len(),
        notes,
    })
}

fn compare_orb(
    config: &VerifyConfig,
    courier: &Courier,
    transport: &mut dyn Transport,
    make: &Make,
) -> anyhow::Result<Comparison> {
    let mut events: BTreeMap<String, MissingEvent> = BTreeMap::new();
    let mut order = Vec::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let destination = config.target.destination.as_ref();
    pipeline::scan(&config.options, destination, |origin, payload| {
        if events.contains_key(&payload.key) {
            return;
        }
        let Ok(record) = serde_json::from_str::<Value>(&payload.json) else {
            return;
        };
        let timestamp = record["timestamp"].as_str().unwrap_or_default().to_owned();
        if let Ok(time) = timestamp.parse::<Timestamp>() {
            first = first.min(time.as_millisecond());
            last = last.max(time.as_millisecond());
        }
        order.push(payload.key.clone());
        events.insert(
            payload.key,
            MissingEvent {
                idempotency_key: record["idempotency_key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                external_customer_id: record["external_customer_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                event_name: record["event_name"].as_str().unwrap_or_default().to_owned(),
                timestamp,
                source: origin.source.to_string(),
                line: origin.line,
            },
        );
    })?;
    let bar = progress(
        config,
        order.len().div_ceil(KEYS_PER_SEARCH) as u64,
        "searches",
    );
    let mut found = HashSet::new();
    for chunk in order.chunks(KEYS_PER_SEARCH) {
        let millis = |ms: i64| {
            crate::event::time::utc_millis_text(
                Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH),
            )
        };
        let body = json!({
            "event_ids": chunk,
            "timeframe_start": millis(first),
            "timeframe_end": millis(last + 1),
        });
        let Some(answer) = ask(courier, transport, &make(body))? else {
            return Ok(Comparison::stopped());
        };
        for event in answer["data"].as_array().into_iter().flatten() {
            if let Some(id) = event["id"]
                .as_str()
                .or_else(|| event["idempotency_key"].as_str())
            {
                found.insert(id.to_owned());
            }
        }
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let checked = order.len();
    let missing: Vec<MissingEvent> = order
        .into_iter()
        .filter(|key| !found.contains(key))
        .filter_map(|key| events.remove(&key))
        .collect();
    let rows = missing
        .iter()
        .map(|m| {
            vec![
                m.idempotency_key.clone(),
                m.external_customer_id.clone(),
                m.event_name.clone(),
                m.timestamp.clone(),
                format!("{}:{}", m.source, m.line),
            ]
        })
        .collect();
    Ok(Comparison {
        columns: &[
            "missing idempotency_key",
            "customer",
            "event",
            "timestamp",
            "from",
        ],
        rows,
        json: serde_json::to_value(missing)?,
        checked,
        notes: Vec::new(),
    })
}

fn day_text(day: i64) -> String {
    Timestamp::from_second(day * DAY)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn progress(config: &VerifyConfig, total: u64, what: &str) -> Option<indicatif::ProgressBar> {
    let show = config.verbosity != Verbosity::Quiet && std::io::stderr().is_terminal() && total > 1;
    show.then(|| {
        let style = indicatif::ProgressStyle::with_template(&format!(
            "{{bar:30}} {{pos}}/{{len}} {what} ({{elapsed}}, eta {{eta}})"
        ))
        .expect("the template is valid");
        indicatif::ProgressBar::new(total).with_style(style)
    })
}

/// A number without float noise: `12`, `0.5`.
fn number(value: f64) -> String {
    let rounded = (value * 1e9).round() / 1e9;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        rounded.to_string()
    }
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
