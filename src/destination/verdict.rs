//! What an answer means for the batch it answers, by the rules every
//! destination shares; a destination's own rules come first.

use std::time::Duration;

use jiff::Timestamp;

use super::Kind;
use crate::transport::wire::Response;

#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Every event in the batch was taken.
    Accepted,
    /// The destination named events it refused (key, its message); the rest
    /// should go again with the same keys.
    Refused(Vec<(String, String)>),
    /// The batch was refused without naming an event: halve it to find the bad ones.
    Split(String),
    /// Worth another try, after the server's wait if it gave one.
    Retry {
        after: Option<Duration>,
        message: String,
    },
    /// Every later request would fail too: stop the run.
    Abort(String),
    /// An answer that is not the API's (a page from a proxy, a path the API
    /// does not have, a 2xx of another shape): the endpoint is wrong, so every
    /// later request would get it too. Stop at once, naming the URL called.
    Foreign(String),
}

/// The statuses every destination treats alike.
pub fn common_verdict(kind: Kind, response: &Response) -> Verdict {
    let status = response.status;
    let described = || {
        let excerpt = response.body_excerpt();
        if excerpt.is_empty() {
            format!("{status}")
        } else {
            format!("{status}: {excerpt}")
        }
    };
    let html = response
        .header("content-type")
        .is_some_and(|t| t.contains("text/html"));
    match status {
        200..=299 if html => Verdict::Foreign(format!(
            "{status} with an HTML page, not an answer from {} (a proxy?): {}",
            kind.display_name(),
            response.body_excerpt()
        )),
        200..=299 => Verdict::Accepted,
        300..=399 => Verdict::Abort(format!(
            "{status}: redirected to {}; segrelay does not follow redirects (set endpoint to the final address)",
            response.header("location").unwrap_or("(no location)")
        )),
        401 | 403 => Verdict::Abort(format!(
            "{status}: {} refused the API key",
            kind.display_name()
        )),
        404 | 405 => Verdict::Foreign(described()),
        408 | 429 | 500 | 502..=599 => Verdict::Retry {
            after: response
                .header("retry-after")
                .and_then(|v| parse_retry_after(v, Timestamp::now())),
            message: described(),
        },
        _ if response
            .header("transient-error")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) =>
        {
            Verdict::Retry {
                after: None,
                message: described(),
            }
        }
        400..=499 => Verdict::Split(described()),
        _ => Verdict::Abort(described()),
    }
}

/// `Retry-After`: a number of seconds, or an HTTP date.
fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(1e9)));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = when.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_retry_after_forms() {
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
