//! Where a bucket is and how requests to it are signed: the region, the
//! endpoint (AWS's, or an S3-compatible store's), path-style or
//! virtual-hosted addressing, the credentials (none with `--no-sign-request`).

use std::sync::RwLock;
use std::time::Duration;

use rusty_s3::{Bucket, UrlStyle};

use super::Options;
use super::credentials::{self, Env};
use super::renew::Keys;

/// How long a presigned request stays valid: it is sent at once.
pub(super) const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);
const DEFAULT_REGION: &str = "us-east-1";

/// One bucket, ready to be asked.
pub(super) struct Store {
    name: String,
    endpoint: Endpoint,
    /// Replaced once when S3 says the bucket is in another region.
    signer: RwLock<Bucket>,
    region: RwLock<String>,
    /// None: anonymous (`--no-sign-request`).
    credentials: Option<Keys>,
    /// Where the credentials came from, for messages.
    pub credentials_from: String,
    pub agent: ureq::Agent,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("Store").field("bucket", &self.name).finish()
    }
}

/// The endpoint requests go to.
#[derive(Debug, Clone)]
struct Endpoint {
    /// Set by `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL` or the profile's
    /// `endpoint_url`: an S3-compatible store (MinIO, R2, ...), addressed
    /// path-style. None: AWS's regional endpoint, virtual-hosted.
    custom: Option<String>,
}

impl Endpoint {
    fn url_and_style(&self, bucket: &str, region: &str) -> (String, UrlStyle) {
        match &self.custom {
            Some(url) => (url.clone(), UrlStyle::Path),
            // A name with dots does not fit a TLS certificate's one level of
            // wildcard: such buckets are asked path-style, as the AWS CLI does.
            None if bucket.contains('.') => {
                (format!("https://s3.{region}.amazonaws.com"), UrlStyle::Path)
            }
            None => (
                format!("https://s3.{region}.amazonaws.com"),
                UrlStyle::VirtualHost,
            ),
        }
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Store {
    pub(super) fn open(bucket: &str, options: &Options) -> Result<Store, String> {
        Store::open_with(bucket, options, &process_env)
    }

    fn open_with(bucket: &str, options: &Options, env: Env) -> Result<Store, String> {
        let profile = credentials::profile(env);
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| profile.region.clone())
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let endpoint = Endpoint {
            custom: env("AWS_ENDPOINT_URL_S3")
                .or_else(|| env("AWS_ENDPOINT_URL"))
                .or_else(|| profile.endpoint_url.clone()),
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A redirect is S3 naming another region: read, never followed.
            .max_redirects(0)
            .user_agent(concat!("segrelay/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .build()
            .into();
        let (credentials, credentials_from) = match options.no_sign_request {
            true => (None, "no credentials (--no-sign-request)".to_owned()),
            false => {
                let found = credentials::find(env, &profile, &region, &agent)?;
                let from = found.from.clone();
                (Some(Keys::new(found, agent.clone(), options.verbose)), from)
            }
        };
        let signer = signer(bucket, &endpoint, &region)?;
        Ok(Store {
            name: bucket.to_owned(),
            endpoint,
            signer: RwLock::new(signer),
            region: RwLock::new(region),
            credentials,
            credentials_from,
            agent,
        })
    }

    pub(super) fn bucket(&self) -> &str {
        &self.name
    }

    pub(super) fn region(&self) -> String {
        self.region.read().expect("region").clone()
    }

    pub(super) fn custom_endpoint(&self) -> Option<&str> {
        self.endpoint.custom.as_deref()
    }

    /// S3 said the bucket is in `region`: ask there from now on.
    pub(super) fn move_to(&self, region: &str) -> Result<(), String> {
        let moved = signer(&self.name, &self.endpoint, region)?;
        *self.signer.write().expect("signer") = moved;
        *self.region.write().expect("region") = region.to_owned();
        Ok(())
    }

    /// The credentials to sign with now (renewed if they are about to
    /// expire), and their generation; None for anonymous requests.
    fn current(&self) -> Result<(Option<rusty_s3::Credentials>, u64), String> {
        match &self.credentials {
            None => Ok((None, 0)),
            Some(keys) => keys.current().map(|c| (Some(c.keys), c.generation)),
        }
    }

    /// S3 refused the credentials of generation `used` (`code`): renewed
    /// when they can be (see `Keys::renew_after_refusal`).
    pub(super) fn renew_after_refusal(&self, used: u64, code: &str) -> Result<bool, String> {
        match &self.credentials {
            None => Ok(false),
            Some(keys) => keys.renew_after_refusal(used, code),
        }
    }

    /// A presigned ListObjectsV2 URL.
    pub(super) fn list_url(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
    ) -> Result<Signed, String> {
        use rusty_s3::S3Action;
        let (keys, generation) = self.current()?;
        let signer = self.signer.read().expect("signer");
        let mut action = signer.list_objects_v2(keys.as_ref());
        action.with_prefix(prefix);
        if let Some(delimiter) = delimiter {
            action.with_delimiter(delimiter);
        }
        if let Some(token) = continuation {
            action.with_continuation_token(token);
        }
        Ok(Signed {
            url: action.sign(SIGNED_FOR).to_string(),
            generation,
        })
    }

    /// A presigned GetObject URL.
    pub(super) fn get_url(&self, key: &str) -> Result<Signed, String> {
        use rusty_s3::S3Action;
        let (keys, generation) = self.current()?;
        let signer = self.signer.read().expect("signer");
        Ok(Signed {
            url: signer
                .get_object(keys.as_ref(), key)
                .sign(SIGNED_FOR)
                .to_string(),
            generation,
        })
    }
}

/// A presigned URL, and the generation of the credentials that signed it.
pub(super) struct Signed {
    pub url: String,
    pub generation: u64,
}

fn signer(bucket: &str, endpoint: &Endpoint, region: &str) -> Result<Bucket, String> {
    let (url, style) = endpoint.url_and_style(bucket, region);
    let parsed = url
        .parse()
        .map_err(|e| format!("S3 endpoint {url}: not a URL ({e})"))?;
    Bucket::new(parsed, style, bucket.to_owned(), region.to_owned())
        .map_err(|e| format!("S3 endpoint {url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_custom_endpoint_is_path_style_and_aws_virtual_hosted() {
        let anonymous = Options {
            no_sign_request: true,
            ..Options::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("none");
        let home = home.to_str().unwrap();
        let pairs = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_CONFIG_FILE", home),
            ("AWS_SHARED_CREDENTIALS_FILE", home),
        ];
        let env = env_of(&pairs);
        let store = Store::open_with("logs", &anonymous, &env).unwrap();
        assert!(
            store
                .get_url("segment-logs/a.gz")
                .unwrap()
                .url
                .starts_with("http://127.0.0.1:9000/logs/segment-logs/a.gz"),
            "{}",
            store.get_url("segment-logs/a.gz").unwrap().url
        );
        assert_eq!(store.region(), "us-east-1");
        let pairs = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_CONFIG_FILE", home),
            ("AWS_SHARED_CREDENTIALS_FILE", home),
        ];
        let env = env_of(&pairs);
        let store = Store::open_with("logs", &anonymous, &env).unwrap();
        assert!(
            store
                .get_url("k")
                .unwrap()
                .url
                .starts_with("https://logs.s3.eu-west-1.amazonaws.com/k")
        );
        store.move_to("us-west-2").unwrap();
        assert!(
            store
                .get_url("k")
                .unwrap()
                .url
                .starts_with("https://logs.s3.us-west-2.amazonaws.com/k")
        );
        // Unsigned: no credential in the URL.
        assert!(!store.get_url("k").unwrap().url.contains("X-Amz-Credential"));
    }
}
