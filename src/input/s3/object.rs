//! One object's bytes, streamed as they arrive. A connection dropped in the
//! middle goes on from the byte reached (a ranged GET with `If-Match` on the
//! ETag listed), so no byte is read twice or skipped, and an object replaced
//! meanwhile is an error, never a mix of two.

use std::io::{self, Read};
use std::sync::Arc;

use super::request::{self, TRIES};
use super::{COUNTERS, Object, add};

/// The object's bytes as a reader. Nothing is asked of S3 until the first
/// read, so that a reader made ahead costs nothing until it is used.
pub fn open(object: &Arc<Object>) -> Box<dyn Read + Send> {
    Box::new(Body {
        object: object.clone(),
        reader: None,
        delivered: 0,
        skip: 0,
        decoded: false,
        drops: 0,
        finished: false,
    })
}

struct Body {
    object: Arc<Object>,
    reader: Option<ureq::BodyReader<'static>>,
    /// Bytes handed on so far.
    delivered: u64,
    /// Bytes to read past in the answer now being read: a resume of an
    /// object served decompressed starts again from its first byte.
    skip: u64,
    /// S3 served the object with `Content-Encoding` (decompressed on the
    /// way), so byte offsets are not the stored object's.
    decoded: bool,
    /// Connections lost in the middle of this object.
    drops: u32,
    finished: bool,
}

impl Body {
    fn request(&mut self) -> io::Result<()> {
        let object = &self.object;
        let store = &object.store;
        let mut headers = vec![("If-Match", object.etag.clone())];
        let ranged = self.delivered > 0 && !self.decoded;
        if ranged {
            headers.push(("Range", format!("bytes={}-", self.delivered)));
        }
        if self.delivered > 0 {
            add(&COUNTERS.resumes, 1);
        }
        let url = || store.get_url(&object.key);
        let response = request::get(store, &url, &headers, &COUNTERS.get_requests)
            // The input's label stands before the words already.
            .map_err(|failure| io::Error::other(failure.text("GetObject", store)))?;
        let partial = response.status().as_u16() == 206;
        let encoded = response
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| matches!(v.trim(), "gzip" | "br"));
        if self.delivered == 0 {
            self.decoded = encoded;
        }
        // An answer from the first byte (no range asked, or the range not
        // honoured): the bytes already handed on are read past.
        self.skip = match ranged && partial {
            true => 0,
            false => self.delivered,
        };
        self.reader = Some(response.into_body().into_reader());
        Ok(())
    }

    /// The connection dropped (`why`): the next read asks again from where
    /// it stopped, after a wait, unless it has dropped too often.
    fn dropped(&mut self, why: String) -> io::Result<()> {
        self.reader = None;
        self.drops += 1;
        if self.drops >= TRIES {
            return Err(io::Error::other(format!(
                "GetObject: the connection dropped {} times in the middle of the object ({why})",
                self.drops
            )));
        }
        add(&COUNTERS.retries, 1);
        std::thread::sleep(request::backoff(self.drops));
        Ok(())
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished || buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.reader.is_none() {
                self.request()?;
            }
            let reader = self.reader.as_mut().expect("a reader");
            match reader.read(buf) {
                Ok(0) if !self.decoded && self.delivered < self.object.size => {
                    self.dropped(format!(
                        "the answer ended at byte {} of {}",
                        self.delivered, self.object.size
                    ))?;
                }
                Ok(0) => {
                    self.finished = true;
                    self.reader = None;
                    add(&COUNTERS.objects_read, 1);
                    return Ok(0);
                }
                Ok(n) => {
                    add(&COUNTERS.bytes_read, n as u64);
                    let n = n as u64;
                    if self.skip >= n {
                        self.skip -= n;
                        continue;
                    }
                    let start = self.skip as usize;
                    self.skip = 0;
                    let fresh = n as usize - start;
                    buf.copy_within(start..n as usize, 0);
                    self.delivered += fresh as u64;
                    return Ok(fresh);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.dropped(e.kind().to_string())?,
            }
        }
    }
}
