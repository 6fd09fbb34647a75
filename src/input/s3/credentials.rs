//! The credentials, found where AWS's own tools find them, in their order:
//! the environment, the shared config and credentials files (`AWS_PROFILE`),
//! a web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`, through
//! STS), a container's endpoint (ECS, EKS Pod Identity), the EC2 instance
//! metadata (IMDSv2). Each provider is small; none prints a secret.
//!
//! The last three hand out temporary credentials, with an `Expiration`: the
//! provider they came from is kept (`Provider`) so that they can be fetched
//! again there before they expire (`renew`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use rusty_s3::Credentials;

/// The environment, as a function: the tests give one of their own.
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Credentials found, and where (for messages: never the keys).
pub(super) struct Found {
    pub keys: Credentials,
    pub from: String,
    /// When temporary credentials stop being valid; None for the
    /// environment's and the profile files' keys, which do not expire.
    pub expires: Option<Timestamp>,
    /// Where to fetch them again, for temporary credentials.
    pub provider: Option<Provider>,
}

/// A provider of temporary credentials, as found: asked again to renew them.
#[derive(Debug, Clone)]
pub(super) enum Provider {
    /// AssumeRoleWithWebIdentity at STS. The token file is read again at each
    /// renewal: Kubernetes rotates it.
    WebIdentity {
        token_file: String,
        role: String,
        endpoint: String,
        session: String,
    },
    /// A container's endpoint (ECS, EKS Pod Identity).
    Container {
        url: String,
        authorization: Option<Authorization>,
    },
    /// The EC2 instance metadata (IMDSv2), at its endpoint.
    Instance { endpoint: String },
}

/// The `Authorization` a container endpoint wants.
#[derive(Clone)]
pub(super) enum Authorization {
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`: read at each request (rotated).
    File(String),
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    Token(String),
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        match self {
            Authorization::File(file) => write!(f, "File({file})"),
            Authorization::Token(_) => f.write_str("Token(..)"),
        }
    }
}

impl Provider {
    /// Credentials from this provider, fetched now.
    pub(super) fn fetch(&self, agent: &ureq::Agent) -> Result<Found, String> {
        let mut found = match self {
            Provider::WebIdentity {
                token_file,
                role,
                endpoint,
                session,
            } => web_identity(token_file, role, endpoint, session, agent),
            Provider::Container { url, authorization } => {
                container_credentials(url, authorization.as_ref())
            }
            Provider::Instance { endpoint } => instance_metadata(endpoint),
        }?;
        found.provider = Some(self.clone());
        Ok(found)
    }
}

/// What the shared files say of the profile in use.
#[derive(Debug, Default)]
pub(super) struct Profile {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    keys: Option<(String, String, Option<String>)>,
    /// Where the keys were found, or where they were looked for.
    keys_from: String,
}

/// How long a metadata endpoint may take: off EC2 there is none, and a run
/// must not wait for it.
const METADATA_TIMEOUT: Duration = Duration::from_secs(1);
const IMDS_ENDPOINT: &str = "http://169.254.169.254";
const CONTAINER_HOST: &str = "http://169.254.170.2";

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// An INI file's sections: `[name]` to its `key = value` pairs.
fn sections(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut all: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim().to_owned();
            all.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        if let (Some(section), Some((key, value))) = (&current, line.split_once('=')) {
            all.entry(section.clone())
                .or_default()
                .insert(key.trim().to_lowercase(), value.trim().to_owned());
        }
    }
    all
}

/// The profile `AWS_PROFILE` names (else `default`) in the credentials file
/// (`[name]`) and the config file (`[profile name]`, `[default]`).
pub(super) fn profile(env: Env) -> Profile {
    let name = env("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
    let file = |var: &str, default: &str| {
        env(var)
            .map(PathBuf::from)
            .or_else(|| home().map(|h| h.join(".aws").join(default)))
    };
    let credentials_file = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_file = file("AWS_CONFIG_FILE", "config");
    let read = |path: &Option<PathBuf>| {
        path.as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|text| sections(&text))
            .unwrap_or_default()
    };
    let credentials = read(&credentials_file);
    let config = read(&config_file);
    let config_section = match name.as_str() {
        "default" => config.get("default"),
        _ => config.get(&format!("profile {name}")),
    };
    let keys_of = |section: Option<&BTreeMap<String, String>>| {
        let section = section?;
        Some((
            section.get("aws_access_key_id")?.clone(),
            section.get("aws_secret_access_key")?.clone(),
            section.get("aws_session_token").cloned(),
        ))
    };
    let shown = |path: &Option<PathBuf>| {
        path.as_ref()
            .map_or("(no home folder)".to_owned(), |p| p.display().to_string())
    };
    let (keys, keys_from) = match (keys_of(credentials.get(&name)), keys_of(config_section)) {
        (Some(keys), _) => (
            Some(keys),
            format!("profile {name} in {}", shown(&credentials_file)),
        ),
        (None, Some(keys)) => (
            Some(keys),
            format!("profile {name} in {}", shown(&config_file)),
        ),
        (None, None) => (
            None,
            format!(
                "profile {name} in {} and {}",
                shown(&credentials_file),
                shown(&config_file)
            ),
        ),
    };
    let setting = |key: &str| config_section.and_then(|s| s.get(key)).cloned();
    Profile {
        region: setting("region"),
        endpoint_url: setting("endpoint_url"),
        keys,
        keys_from,
    }
}

fn keys(id: String, secret: String, token: Option<String>) -> Credentials {
    match token.filter(|t| !t.is_empty()) {
        Some(token) => Credentials::new_with_token(id, secret, token),
        None => Credentials::new(id, secret),
    }
}

/// The first provider that has credentials, in AWS's order. None found:
/// an error that says what was looked at.
pub(super) fn find(
    env: Env,
    profile: &Profile,
    region: &str,
    agent: &ureq::Agent,
) -> Result<Found, String> {
    if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Found {
            keys: keys(id, secret, env("AWS_SESSION_TOKEN")),
            from: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned(),
            expires: None,
            provider: None,
        });
    }
    if let Some((id, secret, token)) = profile.keys.clone() {
        return Ok(Found {
            keys: keys(id, secret, token),
            from: profile.keys_from.clone(),
            expires: None,
            provider: None,
        });
    }
    let mut looked = vec![
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (not set)".to_owned(),
        profile.keys_from.clone(),
    ];
    if let (Some(token_file), Some(role)) =
        (env("AWS_WEB_IDENTITY_TOKEN_FILE"), env("AWS_ROLE_ARN"))
    {
        let endpoint = env("AWS_ENDPOINT_URL_STS")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
        let provider = Provider::WebIdentity {
            token_file,
            role,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            session: env("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "segrelay".to_owned()),
        };
        return provider.fetch(agent);
    }
    looked.push("AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (not set)".to_owned());
    let container = env("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
        env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").map(|path| format!("{CONTAINER_HOST}{path}"))
    });
    if let Some(url) = container {
        let authorization = match env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Some(file) => Some(Authorization::File(file)),
            None => env("AWS_CONTAINER_AUTHORIZATION_TOKEN").map(Authorization::Token),
        };
        return Provider::Container { url, authorization }.fetch(agent);
    }
    looked.push("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI (not set)".to_owned());
    let disabled = env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if disabled {
        looked.push("the EC2 instance metadata (AWS_EC2_METADATA_DISABLED)".to_owned());
    } else {
        let endpoint =
            env("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| IMDS_ENDPOINT.to_owned());
        let provider = Provider::Instance {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
        };
        match provider.fetch(agent) {
            Ok(found) => return Ok(found),
            Err(why) => looked.push(format!("the EC2 instance metadata at {endpoint} ({why})")),
        }
    }
    Err(format!(
        "no AWS credentials found; looked at: {}. For a public bucket, add --no-sign-request",
        looked.join("; ")
    ))
}

/// A metadata endpoint's agent: short timeouts, no retries.
fn metadata_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(METADATA_TIMEOUT))
        .build()
        .into()
}

/// The JSON a container endpoint and the instance metadata answer with.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Document {
    access_key_id: String,
    secret_access_key: String,
    token: Option<String>,
    expiration: Option<String>,
}

/// An `Expiration` (ISO 8601, `2030-01-01T00:00:00Z`) as a time.
fn expiration(text: Option<&str>, from: &str) -> Result<Option<Timestamp>, String> {
    text.map(|text| {
        text.trim()
            .parse::<Timestamp>()
            .map_err(|_| format!("{from}: the credentials' Expiration {text:?} is not a time"))
    })
    .transpose()
}

fn answer(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<String, String> {
    let response = response.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    response
        .into_body()
        .read_to_string()
        .map_err(|e| e.to_string())
}

fn from_document(text: &str, from: String) -> Result<Found, String> {
    let document: Document = serde_json::from_str(text)
        .map_err(|_| format!("{from}: the answer holds no credentials"))?;
    Ok(Found {
        keys: keys(
            document.access_key_id,
            document.secret_access_key,
            document.token,
        ),
        expires: expiration(document.expiration.as_deref(), &from)?,
        from,
        provider: None,
    })
}

fn container_credentials(
    url: &str,
    authorization: Option<&Authorization>,
) -> Result<Found, String> {
    let from = "the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_*)".to_owned();
    let token = match authorization {
        Some(Authorization::File(file)) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| format!("{from}: cannot read {file}: {e}"))?
                .trim()
                .to_owned(),
        ),
        Some(Authorization::Token(token)) => Some(token.clone()),
        None => None,
    };
    let mut request = metadata_agent().get(url);
    if let Some(token) = token {
        request = request.header("Authorization", token);
    }
    let text = answer(request.call()).map_err(|why| format!("{from}: {why}"))?;
    from_document(&text, from)
}

fn instance_metadata(endpoint: &str) -> Result<Found, String> {
    let agent = metadata_agent();
    let token = answer(
        agent
            .put(&format!("{endpoint}/latest/api/token"))
            .header("X-aws-ec2-metadata-token-ttl-seconds", "21600")
            .send_empty(),
    )?;
    let path = format!("{endpoint}/latest/meta-data/iam/security-credentials/");
    let get = |url: &str| {
        answer(
            agent
                .get(url)
                .header("X-aws-ec2-metadata-token", token.trim())
                .call(),
        )
    };
    let roles = get(&path)?;
    let role = roles
        .lines()
        .next()
        .filter(|r| !r.trim().is_empty())
        .ok_or("no role attached to the instance")?
        .trim()
        .to_owned();
    let text = get(&format!("{path}{role}"))?;
    from_document(&text, format!("the EC2 instance metadata (role {role})"))
}

/// The text of `<tag>` in an XML answer.
pub(super) fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..end])
}

fn web_identity(
    token_file: &str,
    role: &str,
    endpoint: &str,
    session: &str,
    agent: &ureq::Agent,
) -> Result<Found, String> {
    let from = format!("the web identity in {token_file} for role {role} (through STS)");
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| format!("{from}: cannot read {token_file}: {e}"))?;
    let response = agent.post(endpoint).send_form([
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role),
        ("RoleSessionName", session),
        ("WebIdentityToken", token.trim()),
    ]);
    let response = response.map_err(|e| format!("{from}: {e}"))?;
    let status = response.status().as_u16();
    let text = response
        .into_body()
        .read_to_string()
        .map_err(|e| format!("{from}: {e}"))?;
    if status != 200 {
        let code = xml_text(&text, "Code").unwrap_or("no error code");
        return Err(format!("{from}: STS refused (HTTP {status}, {code})"));
    }
    let field = |tag: &str| {
        xml_text(&text, tag)
            .map(str::to_owned)
            .ok_or_else(|| format!("{from}: STS answered without {tag}"))
    };
    Ok(Found {
        keys: keys(
            field("AccessKeyId")?,
            field("SecretAccessKey")?,
            Some(field("SessionToken")?),
        ),
        expires: expiration(xml_text(&text, "Expiration"), &from)?,
        from,
        provider: None,
    })
}

#[cfg(test)]
pub(super) mod tests;
