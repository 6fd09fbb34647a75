//! `verify` for Amberflo: per meter, customer and UTC day, the sum of the
//! meter values the input makes, against Amberflo's usage query.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use super::Api;
use crate::destination::{Comparison, Stream, Verification, Verifier};

/// Customers per usage query.
const CUSTOMERS_PER_QUERY: usize = 50;
const DAY: i64 = 86_400;

/// Compares usage sums through the usage query on Amberflo's API host.
pub(super) struct UsageSums {
    pub(super) api: Arc<Api>,
}

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

impl Verifier for UsageSums {
    fn compare(&self, with: &mut Verification<'_>) -> anyhow::Result<Comparison> {
        // (meter, customer, day) -> sum; Amberflo drops a record it already has.
        let mut expected: BTreeMap<(String, String, i64), f64> = BTreeMap::new();
        let mut seen = HashSet::new();
        let mut oldest: Option<i64> = None;
        with.scan(|_, payload| {
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
        let bar = with.progress(queries as u64, "usage queries");
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
                let Some(answer) = with.ask(&self.api.usage(&body))? else {
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
}

fn day_text(day: i64) -> String {
    Timestamp::from_second(day * DAY)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
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
