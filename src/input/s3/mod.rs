//! `s3://bucket/prefix` inputs, read where they are: listed with
//! ListObjectsV2 (walked as a local folder is, Segment's day prefixes pruned
//! alike), each object streamed with GetObject and decoded as it arrives,
//! never written to disk.
//!
//! Requests are signed by `rusty-s3` (SigV4, presigned URLs) and sent with
//! `ureq`: the reading path stays synchronous, on threads. The credentials
//! are found as AWS's own tools find them (`credentials`), and temporary
//! ones renewed before they expire (`renew`).

mod credentials;
mod endpoint;
mod list;
mod object;
mod renew;
mod request;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

pub use object::open;

use super::Source;
use super::folders::{DayBounds, Folders};
use endpoint::Store;

const SCHEME: &str = "s3://";

/// How to reach S3, from the command line (the rest comes from the
/// environment and the AWS config files, as for AWS's own tools).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--no-sign-request`: anonymous requests, for public buckets.
    pub no_sign_request: bool,
    /// `-v`: temporary credentials' renewals are said.
    pub verbose: bool,
}

/// Whether an input names an S3 location rather than a file.
pub fn is_url(path: &Path) -> bool {
    path.to_str().is_some_and(|text| text.starts_with(SCHEME))
}

/// One object to read: its key, and the ETag and size it was listed with.
/// Read with `If-Match` on that ETag, so a changed object is never mixed
/// with the one listed.
#[derive(Debug)]
pub struct Object {
    store: Arc<Store>,
    pub key: String,
    pub etag: String,
    pub size: u64,
}

impl Object {
    /// `s3://bucket/key`: how the object is named everywhere (messages,
    /// rejects, checkpoints). Never a signed URL.
    pub fn label(&self) -> String {
        format!("{SCHEME}{}/{}", self.store.bucket(), self.key)
    }
}

impl PartialEq for Object {
    fn eq(&self, other: &Object) -> bool {
        (self.store.bucket(), &self.key, &self.etag, self.size)
            == (other.store.bucket(), &other.key, &other.etag, other.size)
    }
}

impl Eq for Object {}

/// The stores opened by a run's inputs, one per bucket: credentials are
/// found and the region settled once.
pub(super) struct Stores {
    options: Options,
    by_bucket: BTreeMap<String, Arc<Store>>,
}

impl Stores {
    pub(super) fn new(options: &Options) -> Stores {
        Stores {
            options: options.clone(),
            by_bucket: BTreeMap::new(),
        }
    }

    /// `s3://bucket/prefix` replaced by the objects under it, in key order,
    /// as `Folders::walk` walks a folder; or the one object it names.
    pub(super) fn expand(
        &mut self,
        url: &Path,
        bounds: &DayBounds,
        walk: &mut Folders,
        files: &mut Vec<Source>,
    ) -> Result<(), String> {
        let text = url.to_str().unwrap_or_default();
        let (bucket, prefix) = parse(text)?;
        let store = match self.by_bucket.get(bucket) {
            Some(store) => store.clone(),
            None => {
                let store = Arc::new(Store::open(bucket, &self.options)?);
                self.by_bucket.insert(bucket.to_owned(), store.clone());
                store
            }
        };
        list::expand(&store, prefix, bounds, walk, files)
    }
}

/// `s3://bucket/prefix` as (bucket, prefix).
fn parse(url: &str) -> Result<(&str, &str), String> {
    let rest = url.strip_prefix(SCHEME).unwrap_or(url);
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid {
        return Err(format!(
            "{url}: not an S3 location (s3://BUCKET/PREFIX, the bucket's name in lowercase \
             letters, digits, '-' and '.')"
        ));
    }
    Ok((bucket, prefix))
}

/// What the run did in S3: the JSON summary's `s3`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Objects listed to be read, and their bytes as stored.
    pub objects_listed: u64,
    pub bytes_listed: u64,
    /// Objects read to their end, and the bytes received for them (as
    /// served, so compressed when stored compressed).
    pub objects_read: u64,
    pub bytes_read: u64,
    /// Objects a checkpoint said were settled: not fetched.
    pub objects_skipped: u64,
    pub list_requests: u64,
    pub get_requests: u64,
    /// Requests made again after a 500, a 503 SlowDown or a dropped connection.
    pub retries: u64,
    /// GETs that went on from the byte reached after a connection dropped mid-object.
    pub resumes: u64,
}

impl Counts {
    /// `  S3: 12 of 14 objects read (2 skipped), 3.1 MB of 3.5 MB; 4 LIST and 12 GET requests, 1 retry`
    pub fn line(&self) -> String {
        let mut line = format!(
            "  S3: {} of {} read",
            self.objects_read,
            crate::console::plural(self.objects_listed, "object")
        );
        if self.objects_skipped > 0 {
            line.push_str(&format!(" ({} settled before)", self.objects_skipped));
        }
        line.push_str(&format!(
            ", {} bytes of {} listed; {} LIST and {} GET requests",
            self.bytes_read, self.bytes_listed, self.list_requests, self.get_requests
        ));
        if self.retries > 0 {
            line.push_str(&format!(
                ", {} retr{} (resumed mid-object: {})",
                self.retries,
                if self.retries == 1 { "y" } else { "ies" },
                self.resumes
            ));
        }
        line.push('\n');
        line
    }
}

#[derive(Default)]
struct Counters {
    objects_listed: AtomicU64,
    bytes_listed: AtomicU64,
    objects_read: AtomicU64,
    bytes_read: AtomicU64,
    objects_skipped: AtomicU64,
    list_requests: AtomicU64,
    get_requests: AtomicU64,
    retries: AtomicU64,
    resumes: AtomicU64,
}

/// One set per process: a run reads its inputs from one place.
static COUNTERS: Counters = Counters {
    objects_listed: AtomicU64::new(0),
    bytes_listed: AtomicU64::new(0),
    objects_read: AtomicU64::new(0),
    bytes_read: AtomicU64::new(0),
    objects_skipped: AtomicU64::new(0),
    list_requests: AtomicU64::new(0),
    get_requests: AtomicU64::new(0),
    retries: AtomicU64::new(0),
    resumes: AtomicU64::new(0),
};

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// An object a checkpoint says is settled, passed over unread.
pub(super) fn skipped(source: &Source) {
    if matches!(source, Source::S3(_)) {
        add(&COUNTERS.objects_skipped, 1);
    }
}

/// What the run did in S3 so far; None when it read nothing from S3.
pub fn counts() -> Option<Counts> {
    let c = &COUNTERS;
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let counts = Counts {
        objects_listed: get(&c.objects_listed),
        bytes_listed: get(&c.bytes_listed),
        objects_read: get(&c.objects_read),
        bytes_read: get(&c.bytes_read),
        objects_skipped: get(&c.objects_skipped),
        list_requests: get(&c.list_requests),
        get_requests: get(&c.get_requests),
        retries: get(&c.retries),
        resumes: get(&c.resumes),
    };
    (counts.list_requests > 0).then_some(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_a_bucket_and_a_prefix() {
        assert_eq!(parse("s3://my-bucket"), Ok(("my-bucket", "")));
        assert_eq!(
            parse("s3://my-bucket/segment-logs/"),
            Ok(("my-bucket", "segment-logs/"))
        );
        assert!(parse("s3://My_Bucket/x").is_err());
        assert!(parse("s3:///x").is_err());
        assert!(is_url(Path::new("s3://b/x")));
        assert!(!is_url(Path::new("./s3:/b")));
    }
}
