//! `verify` for Orb: every idempotency key the input makes, looked up with
//! Orb's event search.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use super::Api;
use crate::destination::{Comparison, Verification, Verifier};
use crate::event::time::utc_millis_text;

/// Keys per search (Orb's limit).
const KEYS_PER_SEARCH: usize = 500;

/// Looks every key up with the event search.
pub(super) struct KeySearch<'a> {
    pub(super) api: &'a Api,
}

/// An event Orb does not have.
#[derive(Debug, Serialize)]
struct MissingEvent {
    idempotency_key: String,
    external_customer_id: String,
    event_name: String,
    timestamp: String,
    source: String,
    line: u64,
}

impl Verifier for KeySearch<'_> {
    fn compare(&self, with: &mut Verification<'_>) -> anyhow::Result<Comparison> {
        let mut events: BTreeMap<String, MissingEvent> = BTreeMap::new();
        let mut order = Vec::new();
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        with.scan(|origin, payload| {
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
        let bar = with.progress(order.len().div_ceil(KEYS_PER_SEARCH) as u64, "searches");
        let mut found = HashSet::new();
        for chunk in order.chunks(KEYS_PER_SEARCH) {
            let millis = |ms: i64| {
                utc_millis_text(Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH))
            };
            let body = json!({
                "event_ids": chunk,
                "timeframe_start": millis(first),
                "timeframe_end": millis(last + 1),
            });
            let Some(answer) = with.ask(&self.api.search(&body))? else {
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
}
