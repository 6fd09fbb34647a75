//! A real S3 server on loopback for the `s3://` tests: `s3s` over `s3s-fs`
//! (objects are files under a folder, one subfolder per bucket), with SigV4
//! checked against a test key, run on a tokio runtime thread of its own. A
//! thin layer in front (`Faulty`) records the requests and injects faults:
//! 503 SlowDown, AccessDenied, ExpiredToken, a connection dropped in the
//! middle of a body. `CredentialsEndpoint` stands for a container's
//! credentials endpoint handing out temporary keys the server accepts.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use s3s::dto::{
    ETag, GetObjectInput, GetObjectOutput, HeadBucketInput, HeadBucketOutput, HeadObjectInput,
    HeadObjectOutput, ListObjectsV2Input, ListObjectsV2Output, StreamingBlob,
};
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

pub const ACCESS_KEY: &str = "AKIATESTSEGRELAY0001";
pub const SECRET_KEY: &str = "s3-test-secret-never-printed-7f3a";
/// Temporary keys (access key, secret) the server accepts too, handed out
/// by a [`CredentialsEndpoint`].
pub const TEMPORARY_KEYS: [(&str, &str); 2] = [
    ("ASIATESTTEMPORARY001", "temporary-secret-one-never-printed"),
    ("ASIATESTTEMPORARY002", "temporary-secret-two-never-printed"),
];

/// A fault for the next request of a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 503 SlowDown.
    SlowDown,
    /// 403 AccessDenied.
    Denied,
    /// 400 ExpiredToken: S3 says the credentials expired.
    ExpiredToken,
    /// A GET's body is cut after this many bytes: the connection drops.
    DropAfter(usize),
    /// The object is replaced by these bytes just before the GET is served:
    /// changed between the listing and the read.
    Replace(Vec<u8>),
    /// 301 PermanentRedirect, with `x-amz-bucket-region` when given, as S3
    /// answers a request signed for another region than the bucket's.
    WrongRegion(Option<&'static str>),
}

/// What the server was asked, and the faults still to inject.
#[derive(Debug, Default)]
pub struct Log {
    /// Each ListObjectsV2: its prefix (followed by ` (no delimiter)` when not listed by `/`).
    pub lists: Vec<String>,
    /// Each GetObject: its key and the Range asked, if any.
    pub gets: Vec<(String, Option<String>)>,
    /// The access key each request was signed with, in order of arrival.
    access_keys: Vec<String>,
    list_faults: VecDeque<Fault>,
    /// For the next GET of a key (None: of any key).
    get_faults: VecDeque<(Option<String>, Fault)>,
}

pub struct S3Server {
    pub endpoint: String,
    pub root: PathBuf,
    log: Arc<Mutex<Log>>,
    _dir: tempfile::TempDir,
}

struct Faulty {
    inner: s3s_fs::FileSystem,
    root: PathBuf,
    log: Arc<Mutex<Log>>,
}

impl Faulty {
    /// An object's ETag, from its bytes. s3s-fs lists objects without one
    /// (S3 always gives it), so this layer sets it in listings and reads alike.
    fn etag(&self, bucket: &str, key: &str) -> Option<String> {
        use sha2::Digest;
        let bytes = std::fs::read(self.root.join(bucket).join(key)).ok()?;
        let digest = sha2::Sha256::digest(&bytes);
        Some(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
    }
}

fn fault_error(fault: &Fault) -> Option<S3Error> {
    match fault {
        Fault::SlowDown => Some(S3Error::with_message(
            S3ErrorCode::SlowDown,
            "Please reduce your request rate.",
        )),
        Fault::Denied => Some(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "Access Denied",
        )),
        Fault::ExpiredToken => Some(S3Error::with_message(
            S3ErrorCode::ExpiredToken,
            "The provided token has expired.",
        )),
        Fault::DropAfter(_) | Fault::Replace(_) => None,
        Fault::WrongRegion(region) => {
            let mut error = S3Error::with_message(
                S3ErrorCode::PermanentRedirect,
                "The bucket you are attempting to access must be addressed using the specified endpoint.",
            );
            error.set_status_code(http::StatusCode::MOVED_PERMANENTLY);
            if let Some(region) = region {
                let mut headers = http::HeaderMap::new();
                headers.insert("x-amz-bucket-region", region.parse().unwrap());
                error.set_headers(headers);
            }
            Some(error)
        }
    }
}

#[async_trait::async_trait]
impl S3 for Faulty {
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let fault = {
            let mut log = self.log.lock().unwrap();
            let prefix = req.input.prefix.clone().unwrap_or_default();
            log.access_keys
                .extend(req.credentials.as_ref().map(|c| c.access_key.clone()));
            log.lists.push(match req.input.delimiter.as_deref() {
                Some("/") => prefix,
                _ => format!("{prefix} (no delimiter)"),
            });
            log.list_faults.pop_front()
        };
        if let Some(error) = fault.as_ref().and_then(fault_error) {
            return Err(error);
        }
        let bucket = req.input.bucket.clone();
        let mut response = self.inner.list_objects_v2(req).await?;
        for object in response.output.contents.iter_mut().flatten() {
            let key = object.key.clone().unwrap_or_default();
            object.e_tag = self.etag(&bucket, &key).map(ETag::Strong);
        }
        Ok(response)
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let range = req.input.range.map(|range| match range {
            s3s::dto::Range::Int { first, last } => {
                format!(
                    "bytes={first}-{}",
                    last.map_or(String::new(), |l| l.to_string())
                )
            }
            s3s::dto::Range::Suffix { length } => format!("bytes=-{length}"),
        });
        let if_match = req
            .headers
            .get("if-match")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_owned());
        let fault = {
            let mut log = self.log.lock().unwrap();
            let key = req.input.key.clone();
            log.gets.push((key.clone(), range));
            log.access_keys
                .extend(req.credentials.as_ref().map(|c| c.access_key.clone()));
            let at = log
                .get_faults
                .iter()
                .position(|(only, _)| only.as_ref().is_none_or(|k| *k == key));
            at.and_then(|at| log.get_faults.remove(at))
                .map(|(_, fault)| fault)
        };
        if let Some(error) = fault.as_ref().and_then(fault_error) {
            return Err(error);
        }
        if let Some(Fault::Replace(bytes)) = &fault {
            let path = self.root.join(&req.input.bucket).join(&req.input.key);
            std::fs::write(path, bytes).unwrap();
        }
        let etag = self.etag(&req.input.bucket, &req.input.key);
        let mut response = self.inner.get_object(req).await?;
        response.output.e_tag = etag.clone().map(ETag::Strong);
        // s3s-fs does not check If-Match on reads: S3 does, with 412.
        if let (Some(wanted), Some(etag)) = (if_match, etag)
            && wanted != etag
        {
            return Err(S3Error::with_message(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            ));
        }
        if let Some(Fault::DropAfter(n)) = fault {
            use futures::TryStreamExt;
            let body = response.output.body.take().expect("a body");
            let bytes: Vec<bytes::Bytes> = body.try_collect().await.expect("the object's bytes");
            let whole: Vec<u8> = bytes.concat();
            let cut = bytes::Bytes::copy_from_slice(&whole[..n.min(whole.len())]);
            let items: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
                Ok(cut),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "dropped by the test",
                )),
            ];
            // The error comes a moment later, so that the first bytes are
            // on the wire: a drop in the middle of the body, not before it.
            let paced = futures::StreamExt::then(futures::stream::iter(items), |item| async {
                if item.is_err() {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                item
            });
            response.output.body = Some(StreamingBlob::wrap(paced));
        }
        Ok(response)
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.inner.head_object(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.inner.head_bucket(req).await
    }
}

impl S3Server {
    /// A server that checks every request's signature against the test key.
    pub fn start() -> S3Server {
        S3Server::start_with(true)
    }

    /// A server that takes anonymous requests: a public bucket.
    pub fn public() -> S3Server {
        S3Server::start_with(false)
    }

    fn start_with(signed: bool) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let log = Arc::new(Mutex::new(Log::default()));
        let service = {
            let fs = s3s_fs::FileSystem::new(&root).unwrap();
            let faulty = Faulty {
                inner: fs,
                root: root.clone(),
                log: log.clone(),
            };
            let mut builder = s3s::service::S3ServiceBuilder::new(faulty);
            if signed {
                let mut auth = s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY);
                for (key, secret) in TEMPORARY_KEYS {
                    auth.register(key.to_owned(), secret.into());
                }
                builder.set_auth(auth);
            }
            builder.build()
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let http = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        continue;
                    };
                    let connection = http
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                        .into_owned();
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                }
            });
        });
        S3Server {
            endpoint,
            root,
            log,
            _dir: dir,
        }
    }

    /// Makes an empty bucket.
    pub fn bucket(&self, name: &str) -> PathBuf {
        let path = self.root.join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// Puts `bytes` at `key` in `bucket`.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let path = self.root.join(bucket).join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// Copies the folder `from` under `prefix` in `bucket`, every file an object.
    pub fn upload(&self, bucket: &str, prefix: &str, from: &Path) {
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let key = format!("{prefix}{name}");
            if path.is_dir() {
                self.upload(bucket, &format!("{key}/"), &path);
            } else {
                self.put(bucket, &key, &std::fs::read(&path).unwrap());
            }
        }
    }

    /// The requests so far, taken: the next call sees only later ones.
    pub fn take_log(&self) -> (Vec<String>, Vec<(String, Option<String>)>) {
        let mut log = self.log.lock().unwrap();
        (
            std::mem::take(&mut log.lists),
            std::mem::take(&mut log.gets),
        )
    }

    /// The access keys requests were signed with so far, in order of arrival.
    pub fn access_keys(&self) -> Vec<String> {
        self.log.lock().unwrap().access_keys.clone()
    }

    pub fn fault_next_list(&self, fault: Fault) {
        self.log.lock().unwrap().list_faults.push_back(fault);
    }

    pub fn fault_next_get(&self, fault: Fault) {
        self.log.lock().unwrap().get_faults.push_back((None, fault));
    }

    /// A fault for the next GET of `key` (objects are fetched ahead, several at once).
    pub fn fault_next_get_of(&self, key: &str, fault: Fault) {
        let key = Some(key.to_owned());
        self.log.lock().unwrap().get_faults.push_back((key, fault));
    }

    /// The binary, set to reach this server with the test key and nothing
    /// else of the environment's AWS settings.
    pub fn segrelay(&self) -> assert_cmd::Command {
        let mut cmd = aws_free(super::segrelay());
        cmd.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        cmd
    }
}

impl S3Server {
    /// [`S3Server::segrelay`] as a `std` command, for a test that spawns the binary.
    pub fn segrelay_process(&self) -> std::process::Command {
        let mut cmd = super::segrelay_process();
        for (name, _) in std::env::vars() {
            if name.starts_with("AWS_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials",
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        cmd
    }
}

/// Every AWS variable of the developer's shell removed, the config files
/// pointed at nothing, the instance metadata off (off EC2 it only waits).
pub fn aws_free(mut cmd: assert_cmd::Command) -> assert_cmd::Command {
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// A container's credentials endpoint on loopback
/// (`AWS_CONTAINER_CREDENTIALS_FULL_URI`): answers its answers in turn, the
/// last one again and again, and counts the requests.
pub struct CredentialsEndpoint {
    pub url: String,
    asked: Arc<std::sync::atomic::AtomicUsize>,
}

impl CredentialsEndpoint {
    /// `answers`: (status, body); see [`CredentialsEndpoint::document`].
    pub fn start(answers: Vec<(u16, String)>) -> CredentialsEndpoint {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/credentials", listener.local_addr().unwrap());
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = asked.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                // A GET: its head only, up to the blank line.
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let n = count.fetch_add(1, Ordering::SeqCst);
                let (status, body) = &answers[n.min(answers.len() - 1)];
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        CredentialsEndpoint { url, asked }
    }

    /// A 200 answer with temporary key `n` of [`TEMPORARY_KEYS`], expiring
    /// `minutes` from now.
    pub fn document(n: usize, minutes: i64) -> (u16, String) {
        let (key, secret) = TEMPORARY_KEYS[n];
        let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(minutes);
        let body = format!(
            r#"{{"AccessKeyId":"{key}","SecretAccessKey":"{secret}","Token":"session-{n}","Expiration":"{expires}"}}"#
        );
        (200, body)
    }

    /// How many times the endpoint was asked.
    pub fn asked(&self) -> usize {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The binary, reaching `s3` with the credentials of this endpoint only.
    pub fn segrelay(&self, s3: &S3Server) -> assert_cmd::Command {
        let mut cmd = aws_free(super::segrelay());
        cmd.env("AWS_ENDPOINT_URL", &s3.endpoint)
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &self.url);
        cmd
    }
}
