//! Backfill filters: a time range, call types and track event names. A filtered
//! event is skipped with a reason of its own.

use jiff::Timestamp;

use crate::event::Event;
use crate::event::time::{event_time, parse_iso};
use crate::reason::Reason;

#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Inclusive.
    pub since: Option<Timestamp>,
    /// Exclusive.
    pub until: Option<Timestamp>,
    pub types: Option<Vec<String>>,
    /// Track event names; other call types pass.
    pub events: Option<Vec<String>>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.since.is_none()
            && self.until.is_none()
            && self.types.is_none()
            && self.events.is_none()
    }

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
            if !name.is_some_and(|n| names.iter().any(|wanted| wanted == n)) {
                return Some(Reason::plain("filtered by --events"));
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
