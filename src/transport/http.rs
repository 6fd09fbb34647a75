//! The real sender: blocking `ureq`, one agent (and its connection pool) per run.

use std::time::{Duration, Instant};

use super::{Reply, SendError, Transport, USER_AGENT};
use crate::event::Origin;
use crate::wire::{HeaderValue, Request, Response};

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
            Err(error) => return Ok(Reply::Failed(classify(error, started.elapsed()))),
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
/// silence are; a bad certificate, a bad URL or a protocol we cannot speak are not.
fn classify(error: ureq::Error, elapsed: Duration) -> SendError {
    use ureq::Error as E;
    // rustls reports a refused certificate as an I/O error carrying invalid
    // data: that is a verdict on the server, not a passing fault.
    let tls = match &error {
        E::Tls(_) | E::Rustls(_) | E::Pem(_) => true,
        E::Io(io) => io.kind() == std::io::ErrorKind::InvalidData,
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
        _ => error.to_string(),
    };
    SendError { message, retryable }
}
