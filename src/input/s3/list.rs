//! A bucket's keys as folders and files: ListObjectsV2 with the delimiter
//! `/`, one prefix at a time, so that `Folders::walk` prunes Segment's day
//! prefixes before any object under them is listed or fetched.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rusty_s3::actions::ListObjectsV2;

use super::endpoint::Store;
use super::request::{self, Failure};
use super::{COUNTERS, Object, SCHEME, add};
use crate::input::Source;
use crate::input::folders::{DayBounds, Entry, Folders, Kind, Tree};

/// One prefix's listing: (key or prefix, name, kind); objects also by key.
type Listing = Result<Vec<(String, String, Kind)>, String>;

struct Keys<'a> {
    store: &'a Arc<Store>,
    /// Each prefix is listed once, though the walk asks twice (to tell
    /// Segment's layout, then to read it).
    listed: HashMap<String, Listing>,
    /// The ETag and size of each object listed.
    objects: HashMap<String, (String, u64)>,
}

/// `prefix` replaced by the objects under it (see `Folders::walk`), or by the
/// one object it names.
pub(super) fn expand(
    store: &Arc<Store>,
    prefix: &str,
    bounds: &DayBounds,
    walk: &mut Folders,
    files: &mut Vec<Source>,
) -> Result<(), String> {
    let mut keys = Keys {
        store,
        listed: HashMap::new(),
        objects: HashMap::new(),
    };
    let root = match prefix.is_empty() || prefix.ends_with('/') {
        true => prefix.to_owned(),
        false => {
            // `s3://bucket/path/file.gz` names an object; `.../day` a prefix.
            // With the delimiter, one page whatever lies under the prefix.
            let page = keys.list(prefix, Some("/"))?;
            if let Some(object) = page.contents.iter().find(|o| o.key == prefix) {
                files.push(keys.object(prefix, object.etag.clone(), object.size));
                return Ok(());
            }
            format!("{prefix}/")
        }
    };
    let name = root
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .map(str::to_owned);
    let name = name.filter(|n| !n.is_empty());
    walk.walk(&mut keys, &root, name.as_deref(), bounds, files)
}

impl Keys<'_> {
    fn label(&self, key: &str) -> String {
        format!("{SCHEME}{}/{key}", self.store.bucket())
    }

    fn object(&self, key: &str, etag: String, size: u64) -> Source {
        add(&COUNTERS.objects_listed, 1);
        add(&COUNTERS.bytes_listed, size);
        Source::S3(Arc::new(Object {
            store: self.store.clone(),
            key: key.to_owned(),
            etag,
            size,
        }))
    }

    /// Every page of ListObjectsV2 under `prefix`, merged.
    fn list(
        &mut self,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<rusty_s3::actions::list_objects_v2::ListObjectsV2Response, String> {
        let mut all: Option<rusty_s3::actions::list_objects_v2::ListObjectsV2Response> = None;
        let mut token: Option<String> = None;
        loop {
            let text = self.page(prefix, delimiter, token.as_deref())?;
            let page = ListObjectsV2::parse_response(&text).map_err(|e| {
                format!(
                    "{}: S3's answer to a listing is not one ListObjectsV2 gives ({e})",
                    self.label(prefix)
                )
            })?;
            token = page.next_continuation_token.clone();
            match &mut all {
                None => all = Some(page),
                Some(all) => {
                    all.contents.extend(page.contents);
                    all.common_prefixes.extend(page.common_prefixes);
                }
            }
            if token.is_none() {
                break;
            }
        }
        Ok(all.expect("one page at least"))
    }

    /// One page, following S3 once to the bucket's region when it names it.
    fn page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<&str>,
    ) -> Result<String, String> {
        let store = self.store;
        let what = self.label(prefix);
        let mut moved = false;
        loop {
            let url = || store.list_url(prefix, delimiter, token);
            match request::get(store, &url, &[], &COUNTERS.list_requests) {
                Ok(response) => {
                    return response.into_body().read_to_string().map_err(|e| {
                        format!(
                            "{what}: the listing was cut short ({})",
                            request::connection_error(&e)
                        )
                    });
                }
                Err(Failure::Refused {
                    region: Some(region),
                    ..
                }) if !moved && region != store.region() => {
                    crate::console::stderr_line(&format!(
                        "segrelay: s3://{} is in region {region}, not {}: asking there \
                         (set AWS_REGION={region} to go there first)",
                        store.bucket(),
                        store.region()
                    ));
                    store.move_to(&region)?;
                    moved = true;
                }
                Err(failure) => return Err(failure.text(&what, store)),
            }
        }
    }
}

impl Tree for Keys<'_> {
    type Node = String;

    fn entries(&mut self, folder: &String) -> Result<Vec<Entry<String>>, String> {
        if !self.listed.contains_key(folder) {
            let listing = self.list(folder, Some("/")).map(|page| {
                let mut entries = Vec::new();
                for object in page.contents {
                    let name = object.key[folder.len().min(object.key.len())..].to_owned();
                    // A folder's own marker (`prefix/`), hidden files as on disk.
                    if name.is_empty() || name.starts_with('.') {
                        continue;
                    }
                    self.objects
                        .insert(object.key.clone(), (object.etag, object.size));
                    entries.push((object.key, name, Kind::File));
                }
                for inner in page.common_prefixes {
                    let name = inner.prefix[folder.len().min(inner.prefix.len())..]
                        .trim_end_matches('/')
                        .to_owned();
                    if name.is_empty() || name.starts_with('.') {
                        continue;
                    }
                    entries.push((inner.prefix, name, Kind::Folder));
                }
                // Key order, as S3 lists and as a folder is read.
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                entries
            });
            self.listed.insert(folder.clone(), listing);
        }
        let listing = self.listed[folder].clone()?;
        Ok(listing
            .into_iter()
            .map(|(node, name, kind)| Entry { node, name, kind })
            .collect())
    }

    fn label(&self, node: &String) -> PathBuf {
        PathBuf::from(Keys::label(self, node))
    }

    fn source(&self, key: String) -> Source {
        let (etag, size) = self.objects.get(&key).cloned().unwrap_or_default();
        self.object(&key, etag, size)
    }
}
