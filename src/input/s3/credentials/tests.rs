//! Each provider against a loopback server standing for STS, a container's
//! endpoint or the EC2 instance metadata, reached through the variables that
//! point AWS's own tools at them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use super::*;

/// A request as the loopback server read it.
#[derive(Debug, Clone)]
pub(in crate::input::s3) struct Seen {
    pub method: String,
    pub path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Answers each request with the first route whose method and path match
/// (`(method, path, status, body)`), 404 otherwise; records every request.
fn loopback(routes: Vec<(&'static str, String, u16, String)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    loopback_with(move |method, path| {
        routes
            .iter()
            .find(|(m, p, _, _)| *m == method && *p == path)
            .map_or((404, String::new()), |(_, _, s, b)| (*s, b.clone()))
    })
}

/// Answers each request with `answer(method, path)` (status, body); records
/// every request.
pub(in crate::input::s3) fn loopback_with(
    answer: impl Fn(&str, &str) -> (u16, String) + Send + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_owned();
            let path = parts.next().unwrap_or_default().to_owned();
            let mut headers = Vec::new();
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    headers.push((name.trim().to_owned(), value.trim().to_owned()));
                }
            }
            let length: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let (status, text) = answer(&method, &path);
            log.lock().unwrap().push(Seen {
                method,
                path,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (url, seen)
}

fn env_of(pairs: Vec<(&str, String)>) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// An environment with no file and no instance metadata, plus `pairs`.
fn isolated(dir: &Path, mut pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    let none = dir.join("none").display().to_string();
    pairs.push(("AWS_CONFIG_FILE", none.clone()));
    pairs.push(("AWS_SHARED_CREDENTIALS_FILE", none));
    if !pairs
        .iter()
        .any(|(k, _)| *k == "AWS_EC2_METADATA_SERVICE_ENDPOINT")
    {
        pairs.push(("AWS_EC2_METADATA_DISABLED", "true".to_owned()));
    }
    env_of(pairs)
}

fn find_with(env: &dyn Fn(&str) -> Option<String>) -> Result<Found, String> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    find(env, &profile(env), "eu-west-1", &agent)
}

const DOCUMENT: &str = r#"{"Code":"Success","AccessKeyId":"ASIAFROMENDPOINT","SecretAccessKey":"endpoint-secret","Token":"endpoint-token","Expiration":"2030-01-01T00:00:00Z"}"#;

use std::path::Path;

#[test]
fn the_environment_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    let env = isolated(
        dir.path(),
        vec![
            ("AWS_ACCESS_KEY_ID", "AKIAENV".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "env-secret".to_owned()),
            ("AWS_SESSION_TOKEN", "env-token".to_owned()),
        ],
    );
    let found = find_with(&env).unwrap();
    assert_eq!(found.keys.key(), "AKIAENV");
    assert_eq!(found.keys.token(), Some("env-token"));
    assert!(!found.from.contains("env-secret"));
}

#[test]
fn the_profile_is_read_from_the_credentials_file_then_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    let config = dir.path().join("config");
    std::fs::write(
        &credentials,
        "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = d\n",
    )
    .unwrap();
    std::fs::write(
        &config,
        "# comment\n[profile work]\nregion = ap-south-1\naws_access_key_id = AKIAWORK\n\
         aws_secret_access_key = w\naws_session_token = t\nendpoint_url = http://minio:9000\n",
    )
    .unwrap();
    let files = |profile: Option<&str>| {
        let mut pairs = vec![
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                credentials.display().to_string(),
            ),
            ("AWS_CONFIG_FILE", config.display().to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ];
        if let Some(name) = profile {
            pairs.push(("AWS_PROFILE", name.to_owned()));
        }
        env_of(pairs)
    };
    let found = find_with(&files(None)).unwrap();
    assert_eq!(found.keys.key(), "AKIADEFAULT");
    assert!(
        found.from.starts_with("profile default in"),
        "{}",
        found.from
    );
    let work = files(Some("work"));
    let found = find_with(&work).unwrap();
    assert_eq!(
        (found.keys.key(), found.keys.token()),
        ("AKIAWORK", Some("t"))
    );
    let profile = profile(&work);
    assert_eq!(profile.region.as_deref(), Some("ap-south-1"));
    assert_eq!(profile.endpoint_url.as_deref(), Some("http://minio:9000"));
}

#[test]
fn a_web_identity_is_exchanged_at_sts() {
    let answer = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>\
        <Credentials><AccessKeyId>ASIASTS</AccessKeyId><SecretAccessKey>sts-secret</SecretAccessKey>\
        <SessionToken>sts-token</SessionToken></Credentials></AssumeRoleWithWebIdentityResult>\
        </AssumeRoleWithWebIdentityResponse>";
    let (url, seen) = loopback(vec![("POST", "/".to_owned(), 200, answer.to_owned())]);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "oidc-token\n").unwrap();
    let env = isolated(
        dir.path(),
        vec![
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/reader".to_owned()),
            ("AWS_ENDPOINT_URL_STS", url),
        ],
    );
    let found = find_with(&env).unwrap();
    assert_eq!(found.keys.key(), "ASIASTS");
    assert_eq!(found.keys.token(), Some("sts-token"));
    let seen = seen.lock().unwrap();
    assert!(
        seen[0].body.contains("Action=AssumeRoleWithWebIdentity"),
        "{:?}",
        seen[0]
    );
    assert!(
        seen[0].body.contains("WebIdentityToken=oidc-token&")
            || seen[0].body.ends_with("WebIdentityToken=oidc-token"),
        "{:?}",
        seen[0]
    );
    assert!(
        seen[0]
            .body
            .contains("RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Freader"),
        "{:?}",
        seen[0]
    );
}

#[test]
fn a_container_endpoint_is_asked_with_its_authorization_token() {
    let (url, seen) = loopback(vec![("GET", "/creds".to_owned(), 200, DOCUMENT.to_owned())]);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "pod-identity-token\n").unwrap();
    let env = isolated(
        dir.path(),
        vec![
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("{url}/creds")),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token.display().to_string(),
            ),
        ],
    );
    let found = find_with(&env).unwrap();
    assert_eq!(found.keys.key(), "ASIAFROMENDPOINT");
    assert_eq!(found.keys.token(), Some("endpoint-token"));
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].header("authorization"), Some("pod-identity-token"));
}

#[test]
fn the_instance_metadata_is_asked_with_an_imdsv2_token() {
    let base = "/latest/meta-data/iam/security-credentials/";
    let (url, seen) = loopback(vec![
        (
            "PUT",
            "/latest/api/token".to_owned(),
            200,
            "imds-session".to_owned(),
        ),
        ("GET", base.to_owned(), 200, "reader-role\n".to_owned()),
        (
            "GET",
            format!("{base}reader-role"),
            200,
            DOCUMENT.to_owned(),
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let env = isolated(dir.path(), vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", url)]);
    let found = find_with(&env).unwrap();
    assert_eq!(found.keys.key(), "ASIAFROMENDPOINT");
    assert!(found.from.contains("reader-role"), "{}", found.from);
    let seen = seen.lock().unwrap();
    let asked: Vec<(&str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(
        asked,
        [
            ("PUT", "/latest/api/token"),
            ("GET", base),
            ("GET", &*format!("{base}reader-role"))
        ]
    );
    assert!(
        seen[0]
            .header("x-aws-ec2-metadata-token-ttl-seconds")
            .is_some()
    );
    for later in &seen[1..] {
        assert_eq!(
            later.header("x-aws-ec2-metadata-token"),
            Some("imds-session"),
            "{later:?}"
        );
    }
}

#[test]
fn nothing_found_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let error = find_with(&isolated(dir.path(), vec![])).err().unwrap();
    for place in [
        "AWS_ACCESS_KEY_ID",
        "profile default in",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_EC2_METADATA_DISABLED",
        "--no-sign-request",
    ] {
        assert!(error.contains(place), "{place}: {error}");
    }
    // Metadata that does not answer is said, not waited on.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let env = isolated(
        dir.path(),
        vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", url.clone())],
    );
    let error = find_with(&env).err().unwrap();
    assert!(
        error.contains(&format!("the EC2 instance metadata at {url}")),
        "{error}"
    );
}

#[test]
fn temporary_credentials_keep_their_expiration() {
    let answer = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>\
        <Credentials><AccessKeyId>ASIASTS</AccessKeyId><SecretAccessKey>sts-secret</SecretAccessKey>\
        <SessionToken>sts-token</SessionToken><Expiration>2030-01-01T01:00:00Z</Expiration>\
        </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
    let (url, _) = loopback(vec![("POST", "/".to_owned(), 200, answer.to_owned())]);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "oidc-token\n").unwrap();
    let env = isolated(
        dir.path(),
        vec![
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/reader".to_owned()),
            ("AWS_ENDPOINT_URL_STS", url),
        ],
    );
    let found = find_with(&env).unwrap();
    assert_eq!(found.expires, Some("2030-01-01T01:00:00Z".parse().unwrap()));
    assert!(matches!(found.provider, Some(Provider::WebIdentity { .. })));

    let (url, _) = loopback(vec![("GET", "/creds".to_owned(), 200, DOCUMENT.to_owned())]);
    let env = isolated(
        dir.path(),
        vec![("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("{url}/creds"))],
    );
    let found = find_with(&env).unwrap();
    assert_eq!(found.expires, Some("2030-01-01T00:00:00Z".parse().unwrap()));
    assert!(matches!(found.provider, Some(Provider::Container { .. })));

    // Keys that do not expire have no provider to renew them from.
    let env = isolated(
        dir.path(),
        vec![
            ("AWS_ACCESS_KEY_ID", "AKIAENV".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "env-secret".to_owned()),
        ],
    );
    let found = find_with(&env).unwrap();
    assert!(found.expires.is_none() && found.provider.is_none());

    // An Expiration that is not a time is said, not taken for "never".
    let bad = DOCUMENT.replace("2030-01-01T00:00:00Z", "soon");
    let (url, _) = loopback(vec![("GET", "/creds".to_owned(), 200, bad)]);
    let env = isolated(
        dir.path(),
        vec![("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("{url}/creds"))],
    );
    let error = find_with(&env).err().unwrap();
    assert!(
        error.contains("Expiration \"soon\" is not a time"),
        "{error}"
    );
}
