//! Backfill filters: a time range, call types and track event names. A filtered
//! event is skipped with a reason of its own.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::Timestamp;

use crate::event::Event;
use crate::event::reason::Reason;
use crate::event::time::{event_time, parse_iso};

#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Inclusive.
    pub since: Option<Timestamp>,
    /// Exclusive.
    pub until: Option<Timestamp>,
    pub types: Option<Vec<String>>,
    /// Track event names; other call types pass.
    pub events: Option<Vec<String>>,
    /// Which `events` matched, and the names of the track events they left out.
    pub seen: Arc<EventNames>,
}

/// Segment's call types, the only values `--types` takes.
pub const CALL_TYPES: [&str; 6] = ["track", "page", "screen", "identify", "group", "alias"];

/// Distinct names of left-out track events kept at most, for the advice on a
/// `--events` name that matched nothing: memory stays bounded.
const KEPT_NAMES: usize = 1000;

/// What `--events` met, filled by the preparing threads.
#[derive(Debug, Default)]
pub struct EventNames {
    /// One flag per `--events` name, in order.
    matched: Vec<AtomicBool>,
    others: Mutex<HashSet<String>>,
}

impl Filter {
    /// Why the event is filtered out, or None to keep it. An event without a
    /// usable time passes the time filters: translation rejects it with the reason.
    pub fn skip_reason(&self, event: &Event) -> Option<Reason> {
        let call = event.call_type();
        let call = call.as_deref();
        if let Some(types) = &self.types
            && !call.is_some_and(|c| types.iter().any(|t| t == c))
        {
            return Some(Reason::plain("filtered by --types"));
        }
        if let Some(names) = &self.events
            && call == Some("track")
        {
            let name = event.str_at("event");
            let name = name.as_deref();
            match name.and_then(|n| names.iter().position(|wanted| wanted == n)) {
                Some(index) => self.seen.matched(index),
                None => {
                    if let Some(name) = name {
                        self.seen.left_out(name);
                    }
                    return Some(Reason::plain("filtered by --events"));
                }
            }
        }
        if (self.since.is_some() || self.until.is_some())
            && let Ok(time) = event_time(event)
        {
            if self.since.is_some_and(|since| time < since) {
                return Some(Reason::plain("filtered by --since"));
            }
            if self.until.is_some_and(|until| time >= until) {
                return Some(Reason::plain("filtered by --until"));
            }
        }
        None
    }
}

impl Filter {
    /// A sentence for each `--events` name that matched no event, with the
    /// closest names the input had instead.
    pub fn unmatched_events(&self) -> Vec<String> {
        let Some(names) = &self.events else {
            return Vec::new();
        };
        let others = self.seen.others.lock().expect("event names");
        names
            .iter()
            .enumerate()
            .filter(|(index, _)| {
                !self
                    .seen
                    .matched
                    .get(*index)
                    .is_some_and(|m| m.load(Ordering::Relaxed))
            })
            .map(|(_, name)| {
                let mut closest: Vec<(usize, &String)> = others
                    .iter()
                    .map(|other| (distance(&name.to_lowercase(), &other.to_lowercase()), other))
                    .filter(|(d, other)| *d <= other.chars().count().max(name.chars().count()) / 2)
                    .collect();
                closest.sort();
                let closest: Vec<String> = closest
                    .iter()
                    .take(3)
                    .map(|(_, n)| format!("{n:?}"))
                    .collect();
                match closest.is_empty() {
                    true => format!("--events {name:?} matched no event"),
                    false => format!(
                        "--events {name:?} matched no event; the input has {}",
                        closest.join(", ")
                    ),
                }
            })
            .collect()
    }
}

impl EventNames {
    /// For the names of `--events`, none matched yet.
    pub fn new(names: usize) -> EventNames {
        EventNames {
            matched: (0..names).map(|_| AtomicBool::new(false)).collect(),
            others: Mutex::default(),
        }
    }

    fn matched(&self, index: usize) {
        if let Some(flag) = self.matched.get(index) {
            flag.store(true, Ordering::Relaxed);
        }
    }

    fn left_out(&self, name: &str) {
        let mut others = self.others.lock().expect("event names");
        if others.len() < KEPT_NAMES && !others.contains(name) {
            others.insert(name.to_owned());
        }
    }
}

/// The candidate nearest to `name` in spelling (case aside), when it is near
/// enough to be a slip of the keyboard rather than another word.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let name_lower = name.to_lowercase();
    candidates
        .into_iter()
        .map(|other| (distance(&name_lower, &other.to_lowercase()), other))
        .filter(|(d, other)| *d > 0 && *d <= other.chars().count().max(name.chars().count()) / 3)
        .min()
        .map(|(_, other)| other)
}

/// Levenshtein distance, by characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `--types`: Segment's call types, in any case; anything else is refused.
pub fn call_types(list: Option<Vec<String>>) -> Result<Option<Vec<String>>, String> {
    let Some(types) = names(list) else {
        return Ok(None);
    };
    types
        .into_iter()
        .map(|name| {
            let lower = name.to_ascii_lowercase();
            match CALL_TYPES.contains(&lower.as_str()) {
                true => Ok(lower),
                false => Err(format!(
                    "--types {name:?} is not a Segment call type: use {}",
                    CALL_TYPES.join(", ")
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `--since`/`--until`: RFC 3339, or a date meaning its midnight UTC.
pub fn parse_bound(text: &str) -> Result<Timestamp, String> {
    parse_iso(text).ok_or_else(|| {
        format!(
            "{text:?} is not a time: use RFC 3339 (2026-01-31T12:00:00Z) or a date (2026-01-31)"
        )
    })
}

/// Names from the command line, trimmed, blanks dropped; None when none is left.
pub fn names(list: Option<Vec<String>>) -> Option<Vec<String>> {
    let names: Vec<String> = list?
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (!names.is_empty()).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;
    use serde_json::json;

    #[test]
    fn closest_is_a_near_spelling_never_the_same_word_or_another_word() {
        let keys = ["external_customer_id_field", "event_name_field", "endpoint"];
        assert_eq!(
            closest("external_customer_id_feild", keys),
            Some("external_customer_id_field")
        );
        assert_eq!(closest("Endpiont", keys), Some("endpoint"));
        assert_eq!(closest("colour", keys), None);
        assert_eq!(closest("endpoint", keys), None);
    }

    fn event(value: serde_json::Value) -> Event {
        let origin = Origin {
            source: "t",
            line: 1,
        };
        Event::from_map(value.as_object().unwrap().clone(), origin)
    }

    #[test]
    fn filters_by_time_type_and_name() {
        let filter = Filter {
            since: Some(parse_bound("2026-01-01").unwrap()),
            until: Some(parse_bound("2026-02-01T00:00:00Z").unwrap()),
            types: names(Some(vec!["track".into(), " page".into(), "".into()])),
            events: Some(vec!["ApiCalls".into()]),
            seen: Arc::new(EventNames::new(1)),
        };
        let kept = event(
            json!({"type": "track", "event": "ApiCalls", "timestamp": "2026-01-15T00:00:00Z"}),
        );
        assert_eq!(filter.skip_reason(&kept), None);
        let page = event(json!({"type": "page", "timestamp": "2026-01-01T00:00:00Z"}));
        assert_eq!(
            filter.skip_reason(&page),
            None,
            "since is inclusive; --events leaves pages alone"
        );
        let cases = [
            (
                json!({"type": "identify", "timestamp": "2026-01-15T00:00:00Z"}),
                "filtered by --types",
            ),
            (
                json!({"type": "track", "event": "Other", "timestamp": "2026-01-15T00:00:00Z"}),
                "filtered by --events",
            ),
            (
                json!({"type": "track", "event": "ApiCalls", "timestamp": "2025-12-31T23:59:59Z"}),
                "filtered by --since",
            ),
            (
                json!({"type": "track", "event": "ApiCalls", "timestamp": "2026-02-01T00:00:00Z"}),
                "filtered by --until",
            ),
        ];
        for (value, reason) in cases {
            assert_eq!(
                filter.skip_reason(&event(value.clone())).unwrap().kind,
                reason,
                "{value}"
            );
        }
        let no_time = event(json!({"type": "track", "event": "ApiCalls"}));
        assert_eq!(filter.skip_reason(&no_time), None);
    }

    #[test]
    fn bounds_take_dates_and_times() {
        assert_eq!(
            parse_bound("2026-01-31").unwrap().to_string(),
            "2026-01-31T00:00:00Z"
        );
        assert!(parse_bound("last tuesday").is_err());
    }
}
