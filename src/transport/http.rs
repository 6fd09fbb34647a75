//! The real sender: blocking `ureq`, one agent (and its connection pool) per run.

use std::time::{Duration, Instant};

use super::{Reply, SendError, Transport, USER_AGENT};
use crate::event::Origin;
use crate::transport::wire::{HeaderValue, Request, Response};

/// The most of a response body segrelay reads; error bodies are short.
const MAX_RESPONSE_BODY: u64 = 1 << 20;

#[derive(Clone)]
pub(crate) struct HttpSender {
    agent: ureq::Agent,
}

impl HttpSender {
    /// `connections`: requests that may be in flight at once, each kept on a
    /// connection of its own between requests.
    pub(crate) fn new(timeout: Duration, connections: usize) -> HttpSender {
        let config = ureq::Agent::config_builder()
            .max_idle_connections_per_host(connections.max(1))
            .max_idle_connections(connections.max(1).max(3))
            .http_status_as_error(false)
            .user_agent(USER_AGENT)
            // A redirect is reported, never followed: credentials stay with the configured host.
            .max_redirects(0)
            .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
            .timeout_send_request(Some(timeout))
            .timeout_send_body(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_recv_body(Some(timeout))
            .build();
        HttpSender {
            agent: config.into(),
        }
    }
}

impl Transport for HttpSender {
    fn deliver(
        &mut self,
        _destination: &str,
        request: &Request,
        _events: &[&Origin],
    ) -> anyhow::Result<Reply> {
        let mut builder = ureq::http::Request::builder()
            .method(request.method)
            .uri(&request.url);
        for header in &request.headers {
            let value = match &header.value {
                HeaderValue::Plain(value) => value.clone(),
                HeaderValue::Secret { prefix, secret } => format!("{prefix}{}", secret.require()?),
            };
            builder = builder.header(header.name, value);
        }
        let body = request.wire_body();
        let http_request = builder.body(body.as_ref())?;
        let started = Instant::now();
        let mut response = match self.agent.run(http_request) {
            Ok(response) => response,
            Err(error) => {
                let (host, _) = request.host_and_target();
                return Ok(Reply::Failed(classify(error, &host, started.elapsed())));
            }
        };
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BODY)
            .read_to_vec()
            .unwrap_or_default();
        Ok(Reply::Response(Response {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        }))
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Which transport errors are worth another try: the network and the server's
/// silence are; a bad certificate, a bad URL or a protocol we cannot speak are
/// not; a name that does not resolve is worth one more try. `host` is the
/// request's, for the messages.
fn classify(error: ureq::Error, host: &str, elapsed: Duration) -> SendError {
    use ureq::Error as E;
    // rustls reports a refused certificate as an I/O error carrying invalid
    // data: that is a verdict on the server, not a passing fault.
    let tls = match &error {
        E::Tls(_) | E::Rustls(_) | E::Pem(_) => true,
        E::Io(io) => io.kind() == std::io::ErrorKind::InvalidData,
        _ => false,
    };
    // The resolver's failure comes as ureq's HostNotFound or as std's lookup error.
    let unresolved = match &error {
        E::HostNotFound => true,
        E::Io(io) => io.to_string().contains("failed to lookup address"),
        _ => false,
    };
    let retryable = !tls
        && matches!(
            error,
            E::Io(_)
                | E::Timeout(_)
                | E::HostNotFound
                | E::ConnectionFailed
                | E::Protocol(_)
                | E::BodyExceedsLimit(_)
        );
    let message = match &error {
        E::Timeout(which) => format!("timed out ({which}) after {} ms", elapsed.as_millis()),
        _ if tls => format!(
            "TLS error (the certificate or the connection was refused), not retried: {error}"
        ),
        _ if unresolved => {
            format!("cannot resolve the host name {host} ({error}): check the endpoint setting")
        }
        _ => error.to_string(),
    };
    SendError {
        message,
        retryable,
        retries_at_most: unresolved.then_some(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_does_not_resolve_is_named_and_tried_once_more() {
        let lookup = std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        );
        for error in [ureq::Error::HostNotFound, ureq::Error::Io(lookup)] {
            let sent = classify(error, "ingest.nowhere.invalid", Duration::ZERO);
            assert!(sent.retryable);
            assert_eq!(sent.retries_at_most, Some(1));
            assert!(
                sent.message.contains("ingest.nowhere.invalid"),
                "{}",
                sent.message
            );
        }
    }

    #[test]
    fn a_refused_connection_keeps_every_retry() {
        let sent = classify(ureq::Error::ConnectionFailed, "localhost:9", Duration::ZERO);
        assert!(sent.retryable);
        assert_eq!(sent.retries_at_most, None);
    }
}
