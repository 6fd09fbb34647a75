//! One request to S3, made again when S3 or the network failed for a moment
//! (a 500, a 503 SlowDown, a dropped connection), with backoff and a bounded
//! number of tries; and S3's refusals in plain words.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use ureq::Body;
use ureq::http::Response;

use super::credentials::xml_text;
use super::endpoint::{Signed, Store};

/// Tries of one request in all, the first included.
pub(super) const TRIES: u32 = 6;
const FIRST_WAIT: Duration = Duration::from_millis(100);
const LONGEST_WAIT: Duration = Duration::from_secs(5);

/// Why a request gave no answer to use.
#[derive(Debug)]
pub(super) enum Failure {
    /// S3 answered with an error that another try would not change.
    Refused {
        status: u16,
        code: String,
        message: String,
        /// `x-amz-bucket-region`, when S3 says where the bucket is.
        region: Option<String>,
        /// The credentials were renewed for this request, and refused again.
        renewed: bool,
    },
    /// Temporary credentials had expired and could not be renewed.
    Credentials(String),
    /// Still failing after every try: S3 or the network.
    Unreachable(String),
}

impl Failure {
    /// The words for it, `what` being what was asked (`s3://bucket/key`).
    pub(super) fn text(&self, what: &str, store: &Store) -> String {
        match self {
            Failure::Unreachable(why) => {
                format!("{what}: S3 did not answer after {TRIES} tries ({why})")
            }
            Failure::Credentials(why) => format!("{what}: {why}"),
            Failure::Refused {
                renewed: true,
                status,
                code,
                message,
                ..
            } => format!(
                "{what}: S3 refused the credentials from {} even just renewed (HTTP {status} {code}{})",
                store.credentials_from,
                match message.is_empty() {
                    true => String::new(),
                    false => format!(": {message}"),
                }
            ),
            Failure::Refused {
                status,
                code,
                message,
                region,
                ..
            } => {
                let detail = match message.is_empty() {
                    true => format!("HTTP {status} {code}"),
                    false => format!("HTTP {status} {code}: {message}"),
                };
                let endpoint = store
                    .custom_endpoint()
                    .map_or_else(|| format!("region {}", store.region()), |e| e.to_owned());
                match code.as_str() {
                    "AccessDenied" | "AllAccessDisabled" => format!(
                        "{what}: access denied ({detail}); the request was signed with {}",
                        store.credentials_from
                    ),
                    "NoSuchBucket" => format!(
                        "{what}: no such bucket {} at {endpoint} ({detail})",
                        store.bucket()
                    ),
                    "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "InvalidToken" => format!(
                        "{what}: S3 refused the credentials from {} ({detail})",
                        store.credentials_from
                    ),
                    "PermanentRedirect"
                    | "AuthorizationHeaderMalformed"
                    | "IllegalLocationConstraintException" => match region {
                        Some(region) => format!(
                            "{what}: wrong region: the bucket is in {region}, not {} (set AWS_REGION={region})",
                            store.region()
                        ),
                        None => format!(
                            "{what}: wrong region: the bucket is not in {} ({detail}); set AWS_REGION to its region",
                            store.region()
                        ),
                    },
                    "NoSuchKey" => format!("{what}: no such object ({detail})"),
                    "PreconditionFailed" => format!(
                        "{what}: the object changed while it was being read (its ETag is not \
                         the one listed); run again to read it as it is now"
                    ),
                    _ => format!("{what}: S3 refused the request ({detail})"),
                }
            }
        }
    }
}

/// A status S3 answers when it is busy or failing for a moment.
fn transient(status: u16) -> bool {
    matches!(status, 500 | 502 | 503 | 504)
}

/// The wait before try `n` (1 for the first retry): doubling, with jitter.
pub(super) fn backoff(n: u32) -> Duration {
    let wait = FIRST_WAIT.saturating_mul(1 << n.saturating_sub(1).min(10));
    let wait = wait.min(LONGEST_WAIT);
    wait.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// Codes S3 answers for credentials that expired: `ExpiredToken`, or, just
/// after the expiry, words for a key or token it no longer knows.
fn expired(code: &str) -> bool {
    matches!(code, "ExpiredToken" | "InvalidToken" | "InvalidAccessKeyId")
}

/// GETs `url()` (signed anew at each try) with `headers`, until S3 answers
/// 2xx or an error a retry would not change. `retries` counts the tries after
/// the first that failed for a moment, `requests` every try. Credentials S3
/// says expired are renewed once and the request made again, not counted as
/// a retry: it did not fail for a moment.
pub(super) fn get(
    store: &Store,
    url: &dyn Fn() -> Result<Signed, String>,
    headers: &[(&str, String)],
    requests: &AtomicU64,
) -> Result<Response<Body>, Failure> {
    let mut last = String::new();
    // Tries that failed for a moment (S3 busy, the network).
    let mut failed = 0;
    let mut renewed = false;
    loop {
        if failed > 0 {
            if failed >= TRIES {
                return Err(Failure::Unreachable(last));
            }
            super::add(&super::COUNTERS.retries, 1);
            std::thread::sleep(backoff(failed));
        }
        let signed = url().map_err(Failure::Credentials)?;
        super::add(requests, 1);
        let mut request = store.agent.get(&signed.url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = match request.call() {
            Ok(response) => response,
            // The URL is never said: it holds the signature.
            Err(e) => {
                last = connection_error(&e);
                failed += 1;
                continue;
            }
        };
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let region = response
            .headers()
            .get("x-amz-bucket-region")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response
            .into_body()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        let code = xml_text(&text, "Code").unwrap_or_default().to_owned();
        if transient(status) || code == "SlowDown" || code == "InternalError" {
            last = format!("HTTP {status} {code}");
            failed += 1;
            continue;
        }
        if expired(&code) && !renewed {
            let renewable = store
                .renew_after_refusal(signed.generation, &code)
                .map_err(Failure::Credentials)?;
            if renewable {
                renewed = true;
                continue;
            }
        }
        let code = match (code.is_empty(), status) {
            (false, _) => code,
            (true, 403) => "AccessDenied".to_owned(),
            (true, 404) => "NoSuchKey".to_owned(),
            (true, 412) => "PreconditionFailed".to_owned(),
            (true, 301) => "PermanentRedirect".to_owned(),
            (true, _) => String::new(),
        };
        return Err(Failure::Refused {
            renewed: renewed && expired(&code),
            status,
            code,
            message: xml_text(&text, "Message").unwrap_or_default().to_owned(),
            region,
        });
    }
}

/// A transport error's words, without the URL (which holds the signature).
pub(super) fn connection_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.kind().to_string(),
        ureq::Error::Timeout(what) => format!("timed out ({what})"),
        ureq::Error::HostNotFound => "host not found".to_owned(),
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        other => {
            let text = other.to_string();
            match text.contains("X-Amz-") {
                true => "connection error".to_owned(),
                false => text,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_a_bound() {
        for n in 1..20 {
            let wait = backoff(n);
            assert!(wait <= LONGEST_WAIT, "{n}: {wait:?}");
            assert!(wait >= FIRST_WAIT / 2, "{n}: {wait:?}");
        }
        assert!(backoff(1) <= FIRST_WAIT);
    }
}
